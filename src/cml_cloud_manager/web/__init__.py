"""HTTP plumbing every router shares: request dependencies, the list envelope, problem answers, the server's send.

Shared machinery: the slices and the other machinery import it; it imports only storage, config and errors."""
