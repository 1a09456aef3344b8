"""The editors' web app's routes (personalize/web.py), mounted at the site root by personalize/urls.py."""

from django.urls import path

from personalize import web

app_name = "web"

urlpatterns = [
    path("", web.root, name="root"),
    path("signin", web.SignInView.as_view(), name="signin"),
    path("signout", web.SignOutView.as_view(), name="signout"),
    path("pairs/", web.pairs_page, name="pairs"),
    path("pairs/match", web.pairs_match, name="pairs-match"),
    path("pairs/upload", web.pair_upload, name="pair-upload"),
    path("pairs/upload-zip", web.pair_upload_zip, name="pair-upload-zip"),
    path("pairs/imports/<int:pk>.json", web.pair_import_json, name="pair-import"),
    path("pairs/<int:pk>/delete", web.pair_delete, name="pair-delete"),
    path("pairs/<int:pk>/<str:which>.jpg", web.pair_image, name="pair-image"),
    path("training/", web.training_page, name="training"),
    path("training/start", web.training_start, name="training-start"),
    path("training/<int:pk>", web.job_page, name="job"),
    path("training/<int:pk>.json", web.job_json, name="job-json"),
    path("training/<int:pk>/cancel", web.job_cancel, name="job-cancel"),
    path("models/", web.models_page, name="models"),
    path("models/<int:pk>/activate", web.model_activate, name="model-activate"),
    path("results/", web.results_page, name="results"),
    path("results/<int:model_pk>/<int:pk>/<str:which>.jpg", web.result_image, name="result-image"),
    path("try/", web.try_page, name="try"),
    path("try/predict", web.try_predict, name="try-predict"),
    path("try/render", web.try_render, name="try-render"),
    path("try/xmp", web.try_xmp, name="try-xmp"),
]
