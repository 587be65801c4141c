"""The operator's side of running Sigil: how the daemon logs (:mod:`sigil.ops.logs`) and the checks of
``sigil doctor`` (:mod:`sigil.ops.doctor`)."""
