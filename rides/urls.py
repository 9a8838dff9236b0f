from ridehail.web.api import UUID_PATTERN, optional_slash_path
from rides import apis

RIDE = rf"api/rides/(?P<ride_id>{UUID_PATTERN})"

urlpatterns = [
    optional_slash_path("api/rides", apis.RidesApi.as_view(), name="rides"),
    optional_slash_path("api/rides/current", apis.CurrentRideApi.as_view(), name="current-ride"),
    optional_slash_path("api/rides/matching-pool", apis.MatchingPoolApi.as_view(), name="matching-pool"),
    optional_slash_path(RIDE, apis.RideApi.as_view(), name="ride"),
    optional_slash_path(f"{RIDE}/cancel", apis.CancelRideApi.as_view(), name="cancel-ride"),
    optional_slash_path(f"{RIDE}/complete", apis.CompleteRideApi.as_view(), name="complete-ride"),
]
