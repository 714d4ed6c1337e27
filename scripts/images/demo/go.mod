module bluegreen.local/demo

go 1.22
