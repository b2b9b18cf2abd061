"""Copy-trader jobs: ingest, decide, execute, reconcile. They measure and act; the policy decides."""
