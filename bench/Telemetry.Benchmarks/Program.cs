using BenchmarkDotNet.Running;

// Runs non-interactively with a filter, e.g.: dotnet run -c Release --project bench/Telemetry.Benchmarks -- --filter '*Decoder*'
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
