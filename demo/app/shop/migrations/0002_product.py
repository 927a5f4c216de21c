from django.db import migrations, models

SEED = [
    ("Espresso cup", "9.50", "Porcelain, 80 ml."),
    ("French press", "34.00", "Borosilicate glass, 1 l."),
    ("Hand grinder", "59.90", "Conical ceramic burrs."),
]


def seed_products(apps, schema_editor):
    product = apps.get_model("shop", "Product")
    for name, price, description in SEED:
        product.objects.create(name=name, price=price, description=description)


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Product",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                ("price", models.DecimalField(decimal_places=2, max_digits=8)),
                ("description", models.TextField(blank=True)),
                ("updated", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["name", "id"],
            },
        ),
        migrations.RunPython(seed_products, migrations.RunPython.noop),
    ]
