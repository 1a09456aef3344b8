from django.apps import AppConfig


class PersonalizeConfig(AppConfig):
    name = "personalize"
    verbose_name = "Personal editing styles"
    default_auto_field = "django.db.models.BigAutoField"
