"""The outbox serves every durable topic: rows are keyed by (topic, key) instead of a driver id."""

from django.db import migrations, models


def copy_driver_ids_to_keys(apps, schema_editor):
    OutboxEvent = apps.get_model("events", "OutboxEvent")
    for row in OutboxEvent.objects.only("id", "driver_id").iterator():
        OutboxEvent.objects.filter(id=row.id).update(key=str(row.driver_id))


class Migration(migrations.Migration):
    dependencies = [("events", "0001_initial")]

    operations = [
        migrations.RemoveIndex(model_name="outboxevent", name="outbox_pending_by_driver"),
        migrations.AddField(
            model_name="outboxevent",
            name="topic",
            field=models.CharField(default="driver-status-changed", max_length=100),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="outboxevent",
            name="key",
            field=models.CharField(
                default="", help_text="what the version counts: the driver's or the ride's id", max_length=100
            ),
            preserve_default=False,
        ),
        migrations.RunPython(copy_driver_ids_to_keys, migrations.RunPython.noop),
        migrations.RemoveField(model_name="outboxevent", name="driver_id"),
        migrations.AddIndex(
            model_name="outboxevent",
            index=models.Index(
                condition=models.Q(("published_at__isnull", True)),
                fields=["topic", "key", "id"],
                name="outbox_pending_by_key",
            ),
        ),
    ]
