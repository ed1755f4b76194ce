"""Development and test tooling: private servers for tests, the demo and the
benchmark.  Runtime code never imports this package."""
