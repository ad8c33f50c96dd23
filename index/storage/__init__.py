"""Where everything is kept: the metadata database and its migrations, the image bytes, thumbnails,
files already read, and the data directory's lock."""
