app_name = "deployments"
urlpatterns: list = []
