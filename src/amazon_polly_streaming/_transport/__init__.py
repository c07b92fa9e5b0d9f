"""What owns sockets and time: dialing (TCP, TLS, proxy), the HTTP/2 connection, its streams, the pool, threads.

Knows nothing of Polly; imports only the exceptions and the client's settings, never the session or above.
"""
