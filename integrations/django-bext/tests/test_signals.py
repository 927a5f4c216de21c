import pytest
from django.db import transaction

from bext_testapp.models import Category, Note, Product
from django_bext import queue_tags, register, registered_models, unregister


@pytest.fixture(autouse=True)
def _clean_tables():
    yield
    Product.objects.all().delete()
    Category.objects.all().delete()
    Note.objects.all().delete()


def tag_bodies(bext):
    return [r["json"] for r in bext.requests]


def test_setting_registers_models():
    assert {Product, Category} <= registered_models()
    assert Note not in registered_models()


def test_save_in_atomic_sends_one_request_after_commit(bext):
    with transaction.atomic():
        p = Product.objects.create(name="a")
        q = Product.objects.create(name="b")
        p.name = "c"
        p.save()
        assert bext.requests == []  # nothing before commit
    assert tag_bodies(bext) == [
        {
            "tags": [
                "bext_testapp.product",
                f"bext_testapp.product:{p.pk}",
                f"bext_testapp.product:{q.pk}",
            ]
        },
    ]


def test_delete_in_atomic_sends_after_commit(bext):
    p = Product.objects.create(name="a")  # autocommit: sent at once
    pk = p.pk
    assert len(bext.requests) == 1
    with transaction.atomic():
        p.delete()
        assert len(bext.requests) == 1
    assert tag_bodies(bext)[1] == {"tags": ["bext_testapp.product", f"bext_testapp.product:{pk}"]}


def test_rollback_sends_nothing(bext):
    with pytest.raises(RuntimeError), transaction.atomic():
        p = Product.objects.create(name="a")
        p.delete()
        raise RuntimeError("boom")
    assert bext.requests == []
    assert not Product.objects.exists()


def test_savepoint_rollback_drops_only_its_tags(bext):
    with transaction.atomic():
        keep = Product.objects.create(name="keep")
        try:
            with transaction.atomic():
                gone = Product.objects.create(name="gone")
                raise RuntimeError
        except RuntimeError:
            pass
        assert bext.requests == []
    [body] = tag_bodies(bext)
    assert f"bext_testapp.product:{keep.pk}" in body["tags"]
    assert f"bext_testapp.product:{gone.pk}" not in body["tags"]


def test_unregistered_model_sends_nothing(bext):
    with transaction.atomic():
        Note.objects.create(text="x")
    assert bext.requests == []


def test_m2m_changed(bext):
    with transaction.atomic():
        p = Product.objects.create(name="p")
        c1 = Category.objects.create(name="c1")
        c2 = Category.objects.create(name="c2")
    bext.requests.clear()
    with transaction.atomic():
        p.categories.add(c1, c2)
    [body] = tag_bodies(bext)
    assert set(body["tags"]) == {
        "bext_testapp.product",
        f"bext_testapp.product:{p.pk}",
        "bext_testapp.category",
        f"bext_testapp.category:{c1.pk}",
        f"bext_testapp.category:{c2.pk}",
    }
    bext.requests.clear()
    with transaction.atomic():
        c1.products.clear()  # reverse side, pk_set is None
    [body] = tag_bodies(bext)
    assert set(body["tags"]) == {
        "bext_testapp.category",
        f"bext_testapp.category:{c1.pk}",
        "bext_testapp.product",
    }


def test_register_and_unregister_explicitly(bext):
    register("bext_testapp.Note")
    try:
        with transaction.atomic():
            n = Note.objects.create(text="x")
        assert tag_bodies(bext) == [{"tags": ["bext_testapp.note", f"bext_testapp.note:{n.pk}"]}]
    finally:
        unregister(Note)
    with transaction.atomic():
        Note.objects.create(text="y")
    assert len(bext.requests) == 1
    with pytest.raises(ValueError):
        register("bext_testapp.Missing")


def test_queue_tags_manual(bext):
    with transaction.atomic():
        queue_tags(["home"])
        Product.objects.create(name="a")
    [body] = tag_bodies(bext)
    assert body["tags"][0] == "home"


def test_unreachable_bext_never_breaks_the_save(closed_port_url, settings_override, caplog):
    settings_override(BEXT_ADMIN_URL=closed_port_url)
    with transaction.atomic():
        Product.objects.create(name="a")
    assert Product.objects.count() == 1
    assert any("could not reach bext" in r.getMessage() for r in caplog.records)
