"""The peer's endpoints: a knox-protected DRF view, and a bare Django view as its floor."""

from django.http import HttpResponse
from knox.auth import TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView


class Check(APIView):
    """204 for a valid knox token (`Authorization: Token <value>`), 401 otherwise."""

    authentication_classes = (TokenAuthentication,)
    permission_classes = (IsAuthenticated,)

    def get(self, request):  # type: ignore[no-untyped-def]
        return Response(status=204)


def bare(request):  # type: ignore[no-untyped-def]
    return HttpResponse(status=204)
