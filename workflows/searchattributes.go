package workflows

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// EnsureSearchAttributes registers the custom search attributes attrs (name
// to type) in namespace through the OperatorService, skipping those that
// already exist with the same type. An attribute that exists with another
// type, or that names a system attribute, is an error. It works against any
// Temporal server, dev or cluster.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string, attrs map[string]enumspb.IndexedValueType) error {
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		if attrs[name] == enumspb.INDEXED_VALUE_TYPE_UNSPECIFIED {
			return fmt.Errorf("search attribute %s: no type", name)
		}
	}
	operator := c.OperatorService()
	// Twice at most: a concurrent caller may add some of the same attributes
	// between the list and the add.
	for range 2 {
		existing, err := operator.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
		if err != nil {
			return fmt.Errorf("list search attributes of namespace %q: %w", namespace, err)
		}
		missing, err := missingSearchAttributes(attrs, existing)
		if err != nil {
			return fmt.Errorf("namespace %q: %w", namespace, err)
		}
		if len(missing) == 0 {
			return nil
		}
		_, err = operator.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
			Namespace:        namespace,
			SearchAttributes: missing,
		})
		var exists *serviceerror.AlreadyExists
		if errors.As(err, &exists) {
			continue
		}
		if err != nil {
			return fmt.Errorf("add search attributes %v to namespace %q: %w", slices.Sorted(maps.Keys(missing)), namespace, err)
		}
		return nil
	}
	return fmt.Errorf("add search attributes to namespace %q: they keep being added concurrently", namespace)
}

// missingSearchAttributes returns the attributes of want that existing lacks.
func missingSearchAttributes(want map[string]enumspb.IndexedValueType, existing *operatorservice.ListSearchAttributesResponse) (map[string]enumspb.IndexedValueType, error) {
	missing := make(map[string]enumspb.IndexedValueType)
	for _, name := range slices.Sorted(maps.Keys(want)) {
		typ := want[name]
		if _, ok := existing.GetSystemAttributes()[name]; ok {
			return nil, fmt.Errorf("search attribute %s is a system attribute", name)
		}
		have, ok := existing.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = typ
		case have != typ:
			return nil, fmt.Errorf("search attribute %s exists with type %s, not %s", name, have, typ)
		}
	}
	return missing, nil
}
