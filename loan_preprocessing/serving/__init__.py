"""What only the HTTP service uses: settings, middleware, metrics, the request
timeout, the start-up heap freeze, the log filter and the prediction log."""
