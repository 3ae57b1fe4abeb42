"""What only the HTTP service uses: settings, middleware, the V2 routes, the CSV
upload's answer, what is kept of each decision, metrics, the request
timeout, the start-up heap freeze, the log filter and the prediction log."""
