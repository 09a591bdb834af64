//! The signed, hash-chained ledger (see README "Ledger format").
