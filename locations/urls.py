from locations import apis
from ridehail.web.api import optional_slash_path

urlpatterns = [
    optional_slash_path("api/locations/tracking", apis.TrackingApi.as_view(), name="tracking"),
    optional_slash_path("api/locations/driver-location", apis.DriverLocationApi.as_view(), name="driver-location"),
    optional_slash_path("api/locations/nearby", apis.NearbyApi.as_view(), name="nearby"),
]
