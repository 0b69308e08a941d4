"""The review UI's HTTP routes, one ``APIRouter`` per module."""
