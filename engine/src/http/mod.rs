//! HTTP/1.1 heads: bounded parsing with `httparse`, header lookup, and writing responses. STUB.
