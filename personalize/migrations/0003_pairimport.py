from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("personalize", "0002_pair_alignment"),
    ]

    operations = [
        migrations.CreateModel(
            name="PairImport",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                        ],
                        db_index=True,
                        default="queued",
                        max_length=10,
                    ),
                ),
                (
                    "file_name",
                    models.CharField(blank=True, help_text="the zip's name as uploaded", max_length=255),
                ),
                (
                    "archive",
                    models.CharField(
                        blank=True, help_text="path in media storage until finished", max_length=300
                    ),
                ),
                ("tags", models.JSONField(blank=True, default=list)),
                ("total", models.PositiveIntegerField(default=0, help_text="pairs matched in the zip")),
                (
                    "done",
                    models.PositiveIntegerField(default=0, help_text="pairs processed (stored or skipped)"),
                ),
                (
                    "stored",
                    models.JSONField(
                        blank=True, default=list, help_text='[{"id", "name"}] of the pairs stored'
                    ),
                ),
                (
                    "skipped",
                    models.JSONField(blank=True, default=list, help_text='[{"name", "reason"[, "pair"]}]'),
                ),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("enqueued_at", models.DateTimeField(blank=True, null=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("lease_owner", models.CharField(blank=True, max_length=200)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                (
                    "owner",
                    models.ForeignKey(
                        on_delete=models.deletion.CASCADE,
                        related_name="pair_imports",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-created_at", "-id"]},
        ),
    ]
