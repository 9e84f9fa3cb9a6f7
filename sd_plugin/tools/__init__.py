"""The command-line tools (console scripts). Each parses its arguments and calls library functions; none imports
another tool."""
