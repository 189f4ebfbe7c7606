package io.pystatefun.compat.interpreter;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import org.apache.flink.statefun.sdk.java.Context;
import org.apache.flink.statefun.sdk.java.StatefulFunction;
import org.apache.flink.statefun.sdk.java.StatefulFunctionSpec;
import org.apache.flink.statefun.sdk.java.TypeName;
import org.apache.flink.statefun.sdk.java.ValueSpec;
import org.apache.flink.statefun.sdk.java.io.KafkaEgressMessage;
import org.apache.flink.statefun.sdk.java.message.Message;
import org.apache.flink.statefun.sdk.java.message.MessageBuilder;
import org.apache.flink.statefun.sdk.java.types.SimpleType;
import org.apache.flink.statefun.sdk.java.types.Type;
import org.apache.flink.statefun.sdk.java.types.Types;

/**
 * The smoke test's command interpreter (contract: compat/interpreter/README.md), written with the
 * official StateFun Java SDK.
 */
public final class CommandInterpreterFn implements StatefulFunction {

  public static final TypeName TYPE =
      TypeName.typeNameFromString("statefun.smoke.e2e/command-interpreter-fn");

  static final TypeName DISCARD_SINK = TypeName.typeNameFromString("statefun.smoke.e2e/discard-sink");
  static final TypeName VERIFICATION_SINK =
      TypeName.typeNameFromString("statefun.smoke.e2e/verification-sink");

  static final ObjectMapper MAPPER = new ObjectMapper();

  /** {"commands": [...]} as UTF-8 JSON, typename statefun.smoke.e2e/commands. */
  static final Type<JsonNode> COMMANDS_TYPE =
      SimpleType.simpleImmutableTypeFrom(
          TypeName.typeNameFromString("statefun.smoke.e2e/commands"),
          MAPPER::writeValueAsBytes,
          MAPPER::readTree);

  /** The counter: the SDK's built-in int type, io.statefun.types/int. */
  static final ValueSpec<Integer> STATE = ValueSpec.named("state").withCustomType(Types.integerType());

  public static final StatefulFunctionSpec SPEC =
      StatefulFunctionSpec.builder(TYPE)
          .withValueSpec(STATE)
          .withSupplier(CommandInterpreterFn::new)
          .build();

  @Override
  public CompletableFuture<Void> apply(Context context, Message message) {
    if (!message.is(COMMANDS_TYPE)) {
      throw new IllegalArgumentException(
          "unexpected message type " + message.valueTypeName() + " for " + context.self());
    }
    JsonNode commands = message.as(COMMANDS_TYPE).get("commands");
    if (commands == null || !commands.isArray()) {
      throw new IllegalArgumentException("message without a \"commands\" list: " + message);
    }
    for (JsonNode command : commands) {
      interpret(context, command);
    }
    return context.done();
  }

  private static void interpret(Context context, JsonNode command) {
    String op = command.path("op").asText();
    switch (op) {
      case "increment":
        {
          int state = context.storage().get(STATE).orElse(0);
          context.storage().set(STATE, state + 1);
          break;
        }
      case "send":
        context.send(commandsMessage(command));
        break;
      case "send_after":
        {
          Duration delay = Duration.ofMillis(command.get("delay_ms").asLong());
          String token = command.path("token").asText("");
          if (token.isEmpty()) {
            context.sendAfter(delay, commandsMessage(command));
          } else {
            context.sendAfter(delay, token, commandsMessage(command));
          }
          break;
        }
      case "cancel":
        context.cancelDelayedMessage(command.get("token").asText());
        break;
      case "egress":
        context.send(
            KafkaEgressMessage.forEgress(DISCARD_SINK)
                .withTopic(command.get("topic").asText())
                .withUtf8Key(context.self().id())
                .withUtf8Value("discarded-message")
                .build());
        break;
      case "verify":
        {
          int state = context.storage().get(STATE).orElse(0);
          ObjectNode value = MAPPER.createObjectNode();
          value.put("id", Integer.parseInt(context.self().id()));
          value.set("expected", command.get("expected"));
          value.put("actual", state);
          byte[] bytes;
          try {
            bytes = MAPPER.writeValueAsBytes(value);
          } catch (Exception e) {
            throw new IllegalStateException(e);
          }
          context.send(
              KafkaEgressMessage.forEgress(VERIFICATION_SINK)
                  .withTopic(command.get("topic").asText())
                  .withUtf8Key(context.self().id())
                  .withValue(bytes)
                  .build());
          break;
        }
      default:
        throw new IllegalArgumentException("unknown op in command " + command);
    }
  }

  private static Message commandsMessage(JsonNode command) {
    ObjectNode body = MAPPER.createObjectNode();
    JsonNode inner = command.get("commands");
    body.set("commands", inner == null ? MAPPER.createArrayNode() : inner);
    return MessageBuilder.forAddress(TYPE, Integer.toString(command.get("target").asInt()))
        .withCustomType(COMMANDS_TYPE, body)
        .build();
  }
}
