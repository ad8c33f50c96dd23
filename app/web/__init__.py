"""The web page: HTML from Jinja templates, a little JavaScript that calls the JSON API, all served by the app."""
