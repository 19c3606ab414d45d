"""Scorer evaluation: step-labelled solutions in (readers), metrics out (metrics), a page (page)."""
