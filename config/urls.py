from django.contrib import admin
from django.urls import include, path

from config.env import env_bool

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/native/", include("native_api.urls")),
]

if env_bool("NATIVE_BENCH_BASELINES", False):  # benchmark baselines (bench/); never in production
    from bench import baselines

    urlpatterns += baselines.urlpatterns()
