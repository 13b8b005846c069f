using BenchmarkDotNet.Running;
using Telemetry.Benchmarks.Trends;

// The trend query through the API against a loaded store:
//   dotnet run -c Release --project bench/Telemetry.Benchmarks -- trends [--patients 10000] [--days 30]
// The end-to-end load benchmark (the server driven at rising rates over gRPC and MQTT, and Mosquitto for comparison):
//   dotnet run -c Release --project bench/Telemetry.Benchmarks -- load [--step-seconds 10] [--runs grpc,mqtt,mqtt1,mosquitto]
// Memory per active patient and per idle MQTT connection (100,000 of each by default):
//   dotnet run -c Release --project bench/Telemetry.Benchmarks -- memory [--patients 100000] [--connections 100000]
// Everything else is BenchmarkDotNet, run non-interactively with a filter: decoders ('*Decoder*'), bulk upload reading
// ('*UploadReader*'), windows and alert rules ('*Window*'), DuckDB group commits ('*DuckDbCommit*'), grain calls
// ('*GrainBatch*'), e.g.:
//   dotnet run -c Release --project bench/Telemetry.Benchmarks -- --filter '*Decoder*'
if (args is ["trends", .. var options])
{
    return await TrendQueryBenchmark.RunAsync(options);
}

if (args is ["load", .. var loadOptions])
{
    return await Telemetry.Benchmarks.Load.LoadBenchmark.RunAsync(loadOptions);
}

if (args is ["memory", .. var memoryOptions])
{
    return await Telemetry.Benchmarks.Load.MemoryBenchmark.RunAsync(memoryOptions);
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
