module roomcast-example

go 1.19
