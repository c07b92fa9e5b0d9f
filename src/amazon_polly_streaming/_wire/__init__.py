"""The wire format, sans-IO: event-stream codec, SigV4 and event signing, the request and the response.

Bytes and values in, bytes and events out; imports no asyncio, socket, ssl or time, nothing above it.
"""
