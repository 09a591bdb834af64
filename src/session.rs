//! One supervised run: decode → decide → record → answer.
