using MinBft.Messages;

// The message records are declared in MinBft.Protocol, which references only the serialization
// attributes and runs no code generator (it must stay free of the Orleans runtime). Their
// serializers and copiers are generated here instead, from any one type of that assembly; every
// process that talks to replicas loads this assembly, so the codecs are always registered.
//
// Seen from here the records are metadata: their backing fields are invisible and their
// properties init-only, so the generator can set them only as primary-constructor parameters.
// Hence field ids go on the parameters, [Id(n)], never on the properties ([property: Id(n)] fails
// the build with ORLEANS0101). Tests/Architecture/MessageSerializationTests.cs round-trips them all.
[assembly: GenerateCodeForDeclaringAssembly(typeof(Request))]
