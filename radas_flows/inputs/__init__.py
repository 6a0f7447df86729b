"""The experiment's inputs: the spec, and the rules and JSON types every entry point checks."""
