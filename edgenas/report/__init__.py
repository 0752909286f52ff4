"""Tables and reports shown to people."""
