"""The zero-shot benchmark suite: the public test sets read as published, scored the way the
Depth Anything papers score them (`protocol`), beside the published figures (`published`)."""
