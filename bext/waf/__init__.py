"""The web application firewall: ModSecurity v3 with the OWASP Core Rule Set."""
