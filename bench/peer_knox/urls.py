import views
from django.urls import path

urlpatterns = [
    path("check", views.Check.as_view()),
    path("bare", views.bare),
]
