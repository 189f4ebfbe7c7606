package io.pystatefun.compat.interpreter;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.flink.statefun.sdk.java.StatefulFunctions;
import org.apache.flink.statefun.sdk.java.handler.RequestReplyHandler;
import org.apache.flink.statefun.sdk.java.slice.Slice;
import org.apache.flink.statefun.sdk.java.slice.Slices;

/** Serves the command interpreter on 127.0.0.1:PORT over StateFun's request-reply protocol. */
public final class Server {

  public static void main(String[] args) throws IOException {
    if (args.length != 1) {
      System.err.println("usage: Server PORT");
      System.exit(2);
    }
    int port = Integer.parseInt(args[0]);

    StatefulFunctions functions = new StatefulFunctions();
    functions.withStatefulFunction(CommandInterpreterFn.SPEC);
    RequestReplyHandler handler = functions.requestReplyHandler();

    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 1024);
    ExecutorService executor =
        Executors.newFixedThreadPool(Math.max(8, 4 * Runtime.getRuntime().availableProcessors()));
    server.setExecutor(executor);
    server.createContext("/", exchange -> handle(handler, exchange));
    server.start();
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  server.stop(0);
                  executor.shutdownNow();
                }));
    System.err.println(
        "command interpreter (StateFun Java SDK) listening on http://127.0.0.1:"
            + server.getAddress().getPort()
            + "/statefun");
  }

  private static void handle(RequestReplyHandler handler, HttpExchange exchange) throws IOException {
    try {
      if (!"POST".equals(exchange.getRequestMethod())) {
        reply(exchange, 405, "text/plain", "POST only\n".getBytes());
        return;
      }
      byte[] request;
      try (InputStream in = exchange.getRequestBody()) {
        request = in.readAllBytes();
      }
      Slice response;
      try {
        response = handler.handle(Slices.wrap(request)).join();
      } catch (Throwable t) {
        Throwable cause = t.getCause() != null ? t.getCause() : t;
        System.err.println("invocation failed: " + cause);
        cause.printStackTrace(System.err);
        reply(exchange, 500, "text/plain", ("invocation failed: " + cause + "\n").getBytes());
        return;
      }
      reply(exchange, 200, "application/octet-stream", response.toByteArray());
    } catch (Throwable t) {
      System.err.println("request failed: " + t);
      t.printStackTrace(System.err);
      throw t;
    } finally {
      exchange.close();
    }
  }

  private static void reply(HttpExchange exchange, int status, String contentType, byte[] body)
      throws IOException {
    exchange.getResponseHeaders().set("Content-Type", contentType);
    exchange.sendResponseHeaders(status, body.length);
    try (OutputStream out = exchange.getResponseBody()) {
      out.write(body);
    }
  }
}
