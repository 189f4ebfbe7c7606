// The smoke test's command interpreter (compat/interpreter/README.md) on the official StateFun Go SDK
// (github.com/apache/flink-statefun/statefun-sdk-go/v3). Usage: interpreter PORT; it serves POST
// /statefun on 127.0.0.1:PORT until SIGTERM/SIGINT (or SIGKILL).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/apache/flink-statefun/statefun-sdk-go/v3/pkg/statefun"
)

var (
	functionType     = statefun.TypeNameFrom("statefun.smoke.e2e/command-interpreter-fn")
	commandsType     = statefun.MakeJsonType(statefun.TypeNameFrom("statefun.smoke.e2e/commands"))
	discardSink      = statefun.TypeNameFrom("statefun.smoke.e2e/discard-sink")
	verificationSink = statefun.TypeNameFrom("statefun.smoke.e2e/verification-sink")
	stateSpec        = statefun.ValueSpec{Name: "state", ValueType: statefun.Int32Type}
)

// commands is the message value {"commands": [...]}; nested command lists stay raw JSON, so a send
// forwards them exactly as they came.
type commands struct {
	Commands []command `json:"commands"`
}

type command struct {
	Op       string          `json:"op"`
	Target   *int64          `json:"target"`
	DelayMs  *int64          `json:"delay_ms"`
	Token    string          `json:"token"`
	Commands json.RawMessage `json:"commands"`
	Topic    string          `json:"topic"`
	Expected *int64          `json:"expected"`
}

type outgoing struct {
	Commands json.RawMessage `json:"commands"`
}

func interpret(ctx statefun.Context, message statefun.Message) error {
	if !message.Is(commandsType) {
		return fmt.Errorf("unexpected message type %s", message.ValueTypeName())
	}
	var batch commands
	if err := message.As(commandsType, &batch); err != nil {
		return fmt.Errorf("bad commands message: %w", err)
	}
	self := ctx.Self().Id
	for _, cmd := range batch.Commands {
		switch cmd.Op {
		case "increment":
			var state int32
			ctx.Storage().Get(stateSpec, &state)
			ctx.Storage().Set(stateSpec, state+1)
		case "send", "send_after":
			if cmd.Target == nil {
				return fmt.Errorf("%s without a target", cmd.Op)
			}
			nested := cmd.Commands
			if len(nested) == 0 || string(nested) == "null" {
				nested = json.RawMessage("[]")
			}
			msg := statefun.MessageBuilder{
				Target:    statefun.Address{FunctionType: functionType, Id: strconv.FormatInt(*cmd.Target, 10)},
				Value:     outgoing{Commands: nested},
				ValueType: commandsType,
			}
			if cmd.Op == "send" {
				ctx.Send(msg)
				continue
			}
			if cmd.DelayMs == nil {
				return errors.New("send_after without a delay_ms")
			}
			delay := time.Duration(*cmd.DelayMs) * time.Millisecond
			if cmd.Token == "" {
				ctx.SendAfter(delay, msg)
			} else {
				token, err := statefun.NewCancellationToken(cmd.Token)
				if err != nil {
					return err
				}
				ctx.SendAfterWithCancellationToken(delay, token, msg)
			}
		case "cancel":
			token, err := statefun.NewCancellationToken(cmd.Token)
			if err != nil {
				return fmt.Errorf("cancel: %w", err)
			}
			ctx.CancelDelayedMessage(token)
		case "egress":
			ctx.SendEgress(statefun.KafkaEgressBuilder{
				Target: discardSink,
				Topic:  cmd.Topic,
				Key:    self,
				Value:  "discarded-message",
			})
		case "verify":
			if cmd.Expected == nil {
				return errors.New("verify without expected")
			}
			id, err := strconv.ParseInt(self, 10, 64)
			if err != nil {
				return fmt.Errorf("verify: id %q is not a decimal integer", self)
			}
			var state int32
			ctx.Storage().Get(stateSpec, &state)
			ctx.SendEgress(statefun.KafkaEgressBuilder{
				Target: verificationSink,
				Topic:  cmd.Topic,
				Key:    self,
				Value:  fmt.Sprintf(`{"id": %d, "expected": %d, "actual": %d}`, id, *cmd.Expected, state),
			})
		default:
			return fmt.Errorf("unknown op %q", cmd.Op)
		}
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: interpreter PORT")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "usage: interpreter PORT")
		os.Exit(2)
	}
	builder := statefun.StatefulFunctionsBuilder()
	if err := builder.WithSpec(statefun.StatefulFunctionSpec{
		FunctionType: functionType,
		States:       []statefun.ValueSpec{stateSpec},
		Function:     statefun.StatefulFunctionPointer(interpret),
	}); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/statefun", builder.AsHandler())
	listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		log.Fatal(err)
	}
	server := &http.Server{Handler: mux}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	log.Printf("command interpreter (Go SDK) serving on http://127.0.0.1:%d/statefun", port)
	if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
