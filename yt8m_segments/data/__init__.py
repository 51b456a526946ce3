"""Reading and writing the YouTube-8M record formats."""
