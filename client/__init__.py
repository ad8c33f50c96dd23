"""imgsim's command-line client: a thin layer of argument parsing and printing over the library."""
