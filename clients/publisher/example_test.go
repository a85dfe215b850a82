package publisher_test

import (
	"context"
	"fmt"
	"log"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldhq/herald/clients/publisher"
)

func ExampleClient_Publish() {
	conn, err := grpc.NewClient("127.0.0.1:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	c := publisher.New(conn)

	e := cloudevents.NewEvent()
	e.SetID("order-42")
	e.SetSource("/orders")
	e.SetType("com.example.order.created")
	_ = e.SetData(cloudevents.ApplicationJSON, map[string]int{"order": 42})

	results, err := c.Publish(context.Background(), e)
	if err != nil {
		log.Fatal(err, publisher.FieldViolations(err))
	}
	fmt.Println(results[0].DeliveryIDs)
}
