from bext.cli import main

raise SystemExit(main())
