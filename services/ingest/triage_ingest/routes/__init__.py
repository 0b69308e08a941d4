"""The ingest service's HTTP routes, one ``APIRouter`` per module."""
