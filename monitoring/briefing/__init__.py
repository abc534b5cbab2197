"""The daily briefing's stored facts (``python -m monitoring briefing-facts``); the gateway writes the sentences."""
