"""Queue a training job for every editor whose active model was fine-tuned from an older base model.

python manage.py retrain_outdated [--seconds N] [--dry-run]

After a new base model or style prior is deployed (BASE_MODEL_PATH), personal models made from the
previous one keep being served; this command queues their retraining, one job per editor, with the
editor's pairs and the default budget. Editors with an active job, or with too few pairs, are listed
and skipped. The new model replaces the old one only if it validates better (personalize.jobs.succeed);
an editor who already has a model from the current base that did not replace theirs is left alone, so
running the command again does not retrain them again and again (they can still train, or activate that
model, themselves).
"""

from django.core.management.base import BaseCommand

from personalize.inference import base_model
from personalize.jobs import ActiveJobExists, NotEnoughPairs, create_job
from personalize.models import EditorProfile, PersonalModel


class Command(BaseCommand):
    help = "Queue retraining for every editor whose active model predates the current base model."

    def add_arguments(self, parser):
        parser.add_argument(
            "--seconds", type=int, default=None, help="training budget (default: the setting)"
        )
        parser.add_argument("--dry-run", action="store_true", help="list the editors, queue nothing")

    def handle(self, *args, seconds, dry_run, **options):
        current = str(base_model().model.metadata.get("model_id"))
        outdated = (
            EditorProfile.objects.filter(active_model__isnull=False)
            .exclude(active_model__base_version=current)
            .exclude(user__in=PersonalModel.objects.filter(base_version=current).values("owner"))
            .select_related("user", "active_model")
            .order_by("user__username")
        )
        queued = skipped = 0
        for profile in outdated:
            who = f"{profile.user.username} (model v{profile.active_model.version} from {profile.active_model.base_version or '?'})"
            if dry_run:
                self.stdout.write(f"would queue {who}")
                continue
            try:
                job = create_job(profile.user, seconds)
            except (ActiveJobExists, NotEnoughPairs) as exc:
                self.stdout.write(f"skipped {who}: {exc}")
                skipped += 1
                continue
            self.stdout.write(f"queued job {job.pk} for {who}")
            queued += 1
        self.stdout.write(f"base model {current}: {queued} queued, {skipped} skipped")
