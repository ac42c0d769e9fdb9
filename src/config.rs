//! Service configuration from flags and environment.
