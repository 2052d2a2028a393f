from minicontainer.cli import entry

entry()
