"""The run report: metrics (pure), the go-live checklist; rendering comes later."""
