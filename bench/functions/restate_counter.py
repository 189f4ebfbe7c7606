"""The keyed counter of bench/keyed_counter.py, for Restate (a virtual object per key), as in
../shared/reference/peer-setup.md. Served by hypercorn (HTTP/2) from the restate-sdk virtualenv."""

import restate

counter = restate.VirtualObject("counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count") or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler()
async def get(ctx: restate.ObjectContext) -> int:
    return await ctx.get("count") or 0


app = restate.app(services=[counter])
