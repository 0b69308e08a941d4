"""Raw email bytes to one body document per message plus its attachments (``parse.py``)."""
