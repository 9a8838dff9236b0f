from locations.apis import TrackingApi
from ridehail.api import optional_slash_path

urlpatterns = [optional_slash_path("api/locations/tracking", TrackingApi.as_view(), name="tracking")]
