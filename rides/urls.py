from ridehail.api import optional_slash_path
from rides.apis import MatchingPoolApi

urlpatterns = [optional_slash_path("api/rides/matching-pool", MatchingPoolApi.as_view(), name="matching-pool")]
