"""Builders of ToFunction requests and readers of FromFunction replies, for handler tests."""

from pystatefun.wire.request_reply_pb2 import Address, FromFunction, ToFunction, TypedValue


def typed(tpe, value) -> TypedValue:
    return TypedValue(typename=tpe.typename, has_value=True, value=tpe.serializer().serialize(value))


def request(typename: str, id: str, arguments, state=None, caller=None) -> bytes:
    """A ToFunction batch: ``arguments`` are TypedValues; ``state`` maps names to TypedValue or None."""
    namespace, name = typename.rsplit("/", 1)
    batch = ToFunction.InvocationBatchRequest(target=Address(namespace=namespace, type=name, id=id))
    for state_name, value in (state or {}).items():
        if value is None:
            batch.state.add(state_name=state_name)
        else:
            batch.state.add(state_name=state_name, state_value=value)
    for argument in arguments:
        invocation = batch.invocations.add(argument=argument)
        if caller is not None:
            c_ns, c_name, c_id = caller
            invocation.caller.CopyFrom(Address(namespace=c_ns, type=c_name, id=c_id))
    return ToFunction(invocation=batch).SerializeToString()


def reply(data: bytes) -> FromFunction:
    return FromFunction.FromString(data)
