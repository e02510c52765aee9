"""Host-side effects, one module per subsystem.  Each host step module offers
`apply_from_host(plan, ctx)`; what it creates it registers with `ctx.on_undo`."""
